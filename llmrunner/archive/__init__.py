"""archive: keep what made an experiment beat its baseline — its processed data, adapters, config, udatasets
stats and eval deltas — under `<datapool>/archive/<exp>/<entry>/`, adding entries and never removing one."""
