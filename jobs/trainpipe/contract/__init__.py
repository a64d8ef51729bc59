"""The typed, versioned contract shared by the operator and every job (no model library imports here)."""
