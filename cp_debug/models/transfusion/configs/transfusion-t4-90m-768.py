_base_ = ["./_base_/transfusion_lidar_pillar_second_secfpn.py"]
cp_debug_description = ("AWML Transfusion-L (T4 base): 768x768 grid of 0.24 m pillars (+-92.16 m), 500 proposals "
                        "on a 192x192 head")
