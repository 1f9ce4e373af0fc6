"""Optional built-in job types that ship with Crisper."""
