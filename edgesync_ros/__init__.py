"""edgesync_ros: EdgeSync edge-model updating for ROS 2 camera classifiers.

The pure method lives in :mod:`edgesync_ros.core`, the models in :mod:`edgesync_ros.models`,
the ROS wiring in :mod:`edgesync_ros.ros`. ``edgesync_ros.msg``/``edgesync_ros.srv`` are generated
by ``rosidl`` when the package is built with colcon/ament and merged into this package at install time.
"""

from pkgutil import extend_path

# Run from a source checkout (repository root first on sys.path), this package would hide the colcon-installed copy
# that holds the generated edgesync_ros.msg / edgesync_ros.srv; extending __path__ with every edgesync_ros directory
# on sys.path lets both be found. A no-op for the installed package and for a ROS-free `pip install .`.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
