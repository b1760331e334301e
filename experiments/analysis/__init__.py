"""After an experiment: its record and plots, strategy comparison and the PBT schedule."""
