"""An example application: lead-generation campaigns, started, stopped and restarted on Crisper."""
