import sys

from approxtrain.cli import main

sys.exit(main())
