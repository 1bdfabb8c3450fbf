"""Camera capture: frame sources and the threads that publish their frames on the bus."""
