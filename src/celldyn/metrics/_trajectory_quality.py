def trajectory_quality(*a, **k):
    raise NotImplementedError
