"""jobline_worker."""
