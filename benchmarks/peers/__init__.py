"""Independent peer implementations (optional extras: PyTorch) used only by the benchmarks."""
