"""Step 02: a Majordomo (MDP/0.2) cluster that survives failure."""
