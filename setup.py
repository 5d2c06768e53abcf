"""pip packaging of the ROS-free library and the ``edgesync`` command line.

Role: ``pip install .`` on a machine without ROS gives ``edgesync_ros.core`` / ``models`` / ``data`` / ``eval`` and the
``edgesync`` CLI for offline work (evaluation, hyperparameter search, pretraining, bag tools). The ROS package itself
(generated ``edgesync_ros.msg``/``srv``, nodes in ``lib/edgesync_ros``, launch and config in ``share/``) is built by
colcon from ``package.xml`` + ``CMakeLists.txt``; ament_cmake ignores this file. ``edgesync_ros.ros`` is included but
needs rclpy and a colcon build to import.
"""

from setuptools import find_packages, setup

setup(
    name="edgesync-ros",
    version="0.1.0",
    description="EdgeSync edge-model updating for ROS 2 camera classifiers (ROS-free library + CLI)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["edgesync_ros", "edgesync_ros.*"]),
    package_data={"edgesync_ros": ["py.typed"], "edgesync_ros.models": ["data/*"]},
    install_requires=[
        "numpy<2",
        "opencv-python-headless<4.12",
        "torch",
        "torchvision",
        "onnxruntime",
        "scikit-optimize",
        "rosbags",
        "pyyaml",
        "tqdm",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["edgesync = edgesync_ros.cli:main"]},
)
