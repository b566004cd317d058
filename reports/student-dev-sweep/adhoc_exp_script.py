import sys, time, json, torch, dataclasses
sys.path.insert(0, '/work/main')
from mipd_kit.student.train import StudentConfig, config_from_args, fit, verb_top1, attach_targets, to_input
torch.set_num_threads(int(__import__('os').environ.get('T', '2')))
import os
import torch.nn as nn
import mipd_kit.student.model as MM
BB = os.environ.get('BB', '')
class PoolCNN(nn.Module):
    def __init__(self, width=96):
        super().__init__()
        norm = (lambda o: nn.BatchNorm2d(o)) if 'bn' in BB else (lambda o: nn.GroupNorm(1, o)) if 'ln' in BB else (lambda o: nn.Identity()) if 'nonorm' in BB else (lambda o: nn.GroupNorm(8, o))
        ch = [32, 64, width, width] if 'wide' in BB else [16, 32, 64, width]
        def blk(i, o, pool):
            return [nn.Conv2d(i, o, 3, padding=1), norm(o), nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])
        self.net = nn.Sequential(*blk(3, ch[0], True), *blk(ch[0], ch[1], True), *blk(ch[1], ch[2], True), *blk(ch[2], ch[3], False))
    def forward(self, x):
        return self.net(x).flatten(2).transpose(1, 2)
if 'pool' in BB and False:
    MM.SmallCNN = PoolCNN
if 'flip' in BB:
    import mipd_kit.student.train as TT
    _orig = TT.to_input
    state = {'on': True}
    def to_input(x):
        x = _orig(x)
        if torch.is_grad_enabled() and x.dim() == 4:
            f = torch.rand(len(x)) < 0.5
            x = torch.where(f[:, None, None, None], x.flip(3), x)
        return x
    TT.to_input = to_input
world = torch.load('/tmp/exp/world.pt', weights_only=False)
variant = sys.argv[1]; tag = sys.argv[2]; sets = sys.argv[3:]
cfg = config_from_args(variant, 0, False, sets)
t = time.time()
res = fit(world, cfg, None, resume=False, progress=False)
sp = world.split
vi = {v: i for i, v in enumerate(world.vocab.verbs)}
out = {}
@torch.no_grad()
def preds(d):
    m = res.model; m.eval(); P = []
    for s in range(0, len(d), 256):
        _, sc = m.encode(to_input(d.x[s:s+256])); P.append(m.verb_logits(sc).argmax(-1))
    return torch.cat(P)
for name, d in (('dev', world.dev),):
    p = preds(d)
    for cat in ('seen', 'rare', 'unseen_compositional', 'unseen_novel', 'unseen'):
        ids = torch.tensor([vi[v] for v in sp.lists()[cat]])
        m = torch.isin(d.verb, ids)
        out[f'{name}_{cat[:8]}'] = round(100 * float((p[m] == d.verb[m]).float().mean()), 1)
    out['n_pred_verbs'] = int(p.unique().numel())

if os.environ.get('DIAG'):
    import torch.nn.functional as F
    from mipd_kit.student.train import cached_image_features, load_teacher_kind
    from pathlib import Path
    W = Path('/work/main/data/synthsitu/default-seed0')
    te = load_teacher_kind('embedded', str(W), '/work/main/data/cache')
    tf = cached_image_features(te, [W / 'images' / n for n in world.dev.images], '/work/main/data/cache', 'default-seed0-dev').pooled.float()
    m = res.model; d = world.dev
    with torch.no_grad():
        _, sc = m.encode(to_input(d.x))
        a = F.normalize(m.verb_proj(sc), dim=-1) @ m.verb_emb.t()
        st = m.scene_distill(sc)
        b = F.normalize(st, dim=-1) @ m.verb_emb_t.t()
        tz = F.normalize(tf, dim=-1) @ m.verb_emb_t.t()
        print('scales', float(m.verb_scale.exp()), float(m.verb_scale_t.exp()))
        print('cos(student, teacher) dev', float(F.cosine_similarity(st, tf, dim=-1).mean()), 'teacher-teacher mean cos', float((F.normalize(tf,dim=-1) @ F.normalize(tf,dim=-1).t()).mean()))
        for nm, lg in (('minilm', a), ('tbranch', b), ('teacher', tz)):
            p = lg.argmax(-1); o = {}
            for cat in ('seen', 'rare', 'unseen'):
                ids = torch.tensor([vi[v] for v in sp.lists()[cat]]); mk = torch.isin(d.verb, ids)
                o[cat] = round(100 * float((p[mk] == d.verb[mk]).float().mean()), 1)
            print(nm, o)
    torch.save(m.state_dict(), f'/tmp/exp/{tag}.pt')
out['s'] = round(time.time() - t); out['best_ep'] = res.best_epoch; out['devcurve'] = [round(x, 1) for x in res.dev_curve]
line = f"{tag} {variant} {' '.join(sets)} :: {json.dumps(out)}"
print(line); open('/tmp/exp/results.txt', 'a').write(line + '\n')
