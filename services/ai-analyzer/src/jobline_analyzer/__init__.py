"""jobline_analyzer."""
