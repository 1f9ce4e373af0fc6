"""The fault suite: real faults against real processes, counted from what job bodies did."""
