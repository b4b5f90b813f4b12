"""Online experiments: assignment, analysis and the simulated audience."""
