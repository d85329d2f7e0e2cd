"""Device side: run and measure exported models with numpy and one runtime (no torch)."""
