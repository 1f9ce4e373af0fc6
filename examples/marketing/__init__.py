"""The marketing platform of write-up 001 on Crisper (see README.md)."""
