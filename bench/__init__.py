"""`make bench`: every performance figure of the project, side by side, from one run on one machine."""
