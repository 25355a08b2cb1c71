"""Search spaces and their cost: the `Arch`/`SearchSpace` vocabulary (space), the concrete
layer shapes of a child (plan) and closed-form MACs and params (cost). YAML spaces sit here too."""
