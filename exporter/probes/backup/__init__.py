"""Backups, recovery points and restore drills (`backup`, `rpo`, `restore_drill`)."""
