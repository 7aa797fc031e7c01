"""The contract between training and serving: versioned models, their manifest and preprocessing."""
