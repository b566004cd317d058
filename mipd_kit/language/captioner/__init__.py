"""The embedded captioner: an image-conditioned text decoder on the embedded teacher's patch tokens (the embedded
MLLM that writes glimpse / gaze rationales and image descriptions by looking at the image).

One job per module: :mod:`.model` (vocabulary, config, decoder, generation, the inputs it reads), :mod:`.train`
(training on the world's pretraining captions, checkpoints, releases), :mod:`.sampler` (the ``Sampler`` interface and
batch captioning) and :mod:`.batcher` (requests of many threads decoded together). The names users need are
re-exported here; ``mipd_kit.language.factory.build_sampler`` (backend ``captioner``) builds the sampler.
"""

from mipd_kit.language.captioner.model import (  # noqa: F401
    BOS, EOS, PAD, RESEED, SPECIALS, UNK, Caption, CaptionDecoder, Captioner, CaptionerConfig, CaptionerError, Vocab,
    detokenize, encode_tokens, normalise_box, open_image_file, read_image_file, region_mask, row_uniforms, tokenize)
from mipd_kit.language.captioner.sampler import CaptionBatch, CaptionerSampler, caption_images  # noqa: F401
from mipd_kit.language.captioner.train import (  # noqa: F401
    FORMAT, captioner_for, checkpoint_dir_for, data_fingerprint, find_captioner_release, is_heldout,
    load_captioner, load_captioner_with_teacher, load_or_train_captioner, load_released_captioner,
    random_regions, read_pretrain_captions, save_captioner, train_captioner)
