"""Build and refine the training CSVs (see data/README.md). Each sub-command reads a table, writes one:

    python scripts/data/datautil.py scan video ROOT --output meta.csv
    python scripts/data/datautil.py info meta.csv --output meta_info.csv [--fmin 10]
    python scripts/data/datautil.py extract-audio meta_info.csv --output meta_au.csv
    python scripts/data/datautil.py captions meta_au.csv --captions release_captions.txt --output train_jav.csv
    python scripts/data/datautil.py unpaired train_jav.csv --output train_prior.csv [--config AUDIO_SAMPLE_CONFIG]
    python scripts/data/datautil.py scan audio ROOT --output audio.csv
    python scripts/data/datautil.py audio-info audio.csv --output audio_info.csv
    python scripts/data/datautil.py trim-audio audio_info.csv --seconds 30 --output audio_trim.csv
    python scripts/data/datautil.py resample-audio audio_trim.csv --output audio_16k.csv
    python scripts/data/datautil.py captions audio_16k.csv --captions captions.csv --key audio_path --column audio_text --output a.csv
    python scripts/data/datautil.py dummy-video a.csv --output train_audio.csv
    python scripts/data/datautil.py filter IN.csv --fmin 51 --output OUT.csv
    python scripts/data/datautil.py split IN.csv --fraction 0.9 --output train.csv --rest val.csv
    python scripts/data/datautil.py merge A.csv B.csv --output all.csv
"""

import sys

from javisdit.datasets.datautil_cli import main

if __name__ == "__main__":
    sys.exit(main())
