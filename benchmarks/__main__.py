"""`python -m benchmarks` is `elt bench`."""

from benchmarks.cli import bench

if __name__ == "__main__":
    bench()
