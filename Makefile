.PHONY: run test bench bench-load
run:    ## set up and start the app on http://localhost:8501
	scripts/run.sh
test:   ## set up the same way and run every test
	scripts/test.sh
bench:  ## set up and print the performance figures
	scripts/setup.sh requirements-dev.txt && .venv/bin/python -m tests.bench.run
bench-load:  ## set up, start the app and print how it holds up under many simultaneous readers
	scripts/setup.sh requirements-dev.txt && .venv/bin/python -m tests.bench.load
