"""Data: image files decoded once and cached, labeled dataset layouts and seeded splits, training loaders, the
search's views, and the built-in demo lesions."""
