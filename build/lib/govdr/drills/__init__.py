"""Recovery objectives, measured: status, failover drill, restore drill."""
