"""Whole models: import, graph passes, build and run. Built in a later issue; see DESIGN.md."""
