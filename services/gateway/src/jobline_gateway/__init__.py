"""jobline_gateway."""
