"""The app's widgets: each owns its bindings and styles, and shows what it is handed."""
