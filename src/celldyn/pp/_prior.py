def prior_network(*args, **kwargs):  # placeholder, replaced by its owner
    raise NotImplementedError
