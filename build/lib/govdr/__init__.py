"""govdr: disaster-recovery platform for a government PostgreSQL database (eu-central-2)."""
