"""The torch baseline for the cold-start benchmark: the original project's inference path as one script.

    python bench/torch_generate.py cDCGAN_generator.pth out.png [--stage 2] [--seed 0]

Like the original's torch-only inference script it defines the Generator inline (no dementia-cgan
import), loads the ``{model, z_dim, num_classes, img_size}`` file, generates one image under
``torch.no_grad()`` in eval mode, and saves it as an 8-bit PNG (with Pillow: the cheapest writer,
so the baseline is not slowed by matplotlib or torchvision).
"""

import argparse

import torch
from PIL import Image
from torch import nn


class Generator(nn.Module):
    def __init__(self, z_dim=100, num_classes=4, img_size=128):
        super().__init__()
        self.label_emb = nn.Embedding(num_classes, num_classes)
        layers, c_in, n_blocks = [], z_dim + num_classes, img_size.bit_length() - 3
        for i in range(n_blocks):
            c_out = 512 >> i
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z, labels):
        return self.net(torch.cat([z, self.label_emb(labels)[:, :, None, None]], 1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--stage", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model = Generator(ckpt["z_dim"], ckpt["num_classes"], ckpt["img_size"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    torch.manual_seed(args.seed)
    z = torch.randn(1, ckpt["z_dim"])
    with torch.no_grad():
        img = model(z[:, :, None, None], torch.tensor([args.stage]))
    pixels = ((img[0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(args.out)  # uint8 2-D: 8-bit grayscale


if __name__ == "__main__":
    main()
