"""The application's own environment, read from its workloads through the Kubernetes API.

`workload` is the configuration block (`workload: {namespace, selector}`) that the `env`,
`secret_scan` and `secret_strength` kinds share; `podspec` parses pod templates into
typed containers (env entries and envFrom references, values of literals only);
`reader` makes the API requests (workloads, pods, ConfigMaps, Secret key names and,
opt-in, one Secret value); `variables` resolves what a container defines; `literals`
holds the 1.2.2 rules (sensitive names set as literals or kept in ConfigMaps).
"""
