scheduler = dict(
    type="rflow",
    use_timestep_transform=True,
    sample_method="logit-normal",
)
