"""Product importer (write-up 004) on Crisper."""
