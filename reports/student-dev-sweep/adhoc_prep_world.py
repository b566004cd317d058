import time, torch, sys
sys.path.insert(0, '/work/main')
from mipd_kit.student.train import load_teacher_kind, prepare_world
t=time.time()
W='data/synthsitu/default-seed0'
teacher = load_teacher_kind("embedded", W, 'data/cache')
world = prepare_world(W, 'data/cache', teacher, image_size=64, rationales_path='reports/default-1/rationales.jsonl')
print('prep', time.time()-t, world.report)
world.nmpa_cache = {}
torch.save(world, '/tmp/exp/world.pt')
print('saved', time.time()-t)
