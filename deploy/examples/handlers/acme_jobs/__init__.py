"""An example of your own handlers package, built into an image FROM the Jobline image."""
