"""Physics: materials and their energy-loss tables, sky flux models, units."""
