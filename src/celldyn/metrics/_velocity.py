def velocity_confidence(*a, **k):
    raise NotImplementedError
