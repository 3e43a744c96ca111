"""`python -m engine.model.prepare`: build the float32 model cache now, so the app's first page is fast."""
import time

from engine.model.live_model import load_live_model


def main() -> None:
    started = time.perf_counter()
    model = load_live_model(report=lambda message, fraction: print(f"  {message}", flush=True))
    print(f"  {model.card.name} ready: {model.card.parameters:,} parameters, loaded from the "
          f"{model.card.loaded_from} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
