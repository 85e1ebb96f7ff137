"""RPO monitor Lambda: publishes the database recovery point every minute."""
