import sys

from zcl_lab.cluster_driver.commands import main

sys.exit(main())
