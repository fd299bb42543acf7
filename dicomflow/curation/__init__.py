"""Taking data out again: deleting series, studies and datasets, and the activity of imports."""
