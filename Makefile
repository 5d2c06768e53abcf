# edgesync_ros — the two README commands and the benchmarks. Every target sets up first (idempotent, seconds when
# nothing changed), so each works on a fresh clone.
.PHONY: demo test bench setup clean

setup:
	./tools/setup.sh

demo: setup
	./tools/demo.sh

test: setup
	./tools/test.sh

bench: setup
	./tools/bench.sh

clean:
	rm -rf build install log
