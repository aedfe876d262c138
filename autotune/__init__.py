"""Search over schedules (the auto-scheduler). Built in a later issue; see DESIGN.md."""
