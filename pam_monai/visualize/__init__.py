"""Pictures of results: PNG previews of a segmentation across its slices (used by the CLI and the bundle)."""
