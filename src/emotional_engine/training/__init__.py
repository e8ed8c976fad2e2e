"""Training recipes: the emotion-labelled fiction corpus and the emotion-attention adapter."""
