"""jobline_relay."""
