"""Learning algorithms, one module each (a config dataclass and an nn.Module); `offline_marl.registry` lists them."""
