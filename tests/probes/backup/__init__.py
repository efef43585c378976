"""Support code and captured data for the backup family's tests."""
