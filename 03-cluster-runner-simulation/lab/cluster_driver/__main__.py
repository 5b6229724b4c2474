import sys

from cluster_sim.lab.cluster_driver.commands import main

sys.exit(main())
