"""CT window presets by name, without pydicom or numpy (the import form lists them)."""

# Window presets (center, width) in Hounsfield units.
CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "bone": (600.0, 2800.0),
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
}
