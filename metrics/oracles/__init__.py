"""Independent property oracles: published property models that score generated crystals."""
