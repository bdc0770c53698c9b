"""Built-in datasets: shipped inside installed packages, never downloaded."""
